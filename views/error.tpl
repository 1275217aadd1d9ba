% rebase('layout', title=heading)
<div class="error-page">
<h1>{{heading}} <span class="muted">(error {{error_status}})</span></h1>
% include('message', error=message)
<p class="buttons">
% for i, (text, url) in enumerate(actions):
<a{{!' class="button"' if i == 0 else ''}} href="{{url}}">{{text}}</a>
% end
</p>
</div>
