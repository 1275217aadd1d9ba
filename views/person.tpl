% if get('username'):
<span class="person"><span class="username">{{username}}</span>{{!' ' if get('handle') else ''}}{{'@' + handle if get('handle') else ''}}</span>
% elif get('fallback'):
<span class="person">{{fallback}}</span>
% else:
<span class="person unknown">{{get('nobody', 'a removed account')}}</span>
% end
