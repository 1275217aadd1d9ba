% rebase('layout', title='The app cannot be connected')
<h1>The app cannot be connected</h1>
<p class="error">{{message}}</p>
% if return_url:
<p>The app made a request that cannot be completed. You can
<a href="{{return_url}}">go back to <code>{{return_host}}</code></a> and tell it so.</p>
% else:
<p>Nothing was shared with the app. If you did not expect this page, you can close it.</p>
% end
<p><a href="/">Back to your wikis</a></p>
