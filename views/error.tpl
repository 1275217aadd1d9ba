% rebase('layout', title=f'Error {status}')
<h1>Error {{status}}</h1>
<p class="error">{{message}}</p>
<p class="buttons">
% if not user and status in (403, 404):
<a class="button" href="{{sign_in_url}}">Sign in</a>
% end
<a href="/">Back to the start</a>
</p>
