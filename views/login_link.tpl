% rebase('layout', title='Sign in as ' + person['username'])
<h1>Sign in as {{person['username']}}?</h1>
<p>This one-time link signs this browser in as <strong>{{person['username']}}</strong>{{' (@' + person['handle'] + ')' if person['handle'] else ''}}.
It works once, for ten minutes after it was made.</p>
% if user and user['did'] != person['did']:
<p class="notice">This browser is signed in as {{user['username']}} now; continuing signs it in as
{{person['username']}} instead.</p>
% end
<form method="post" action="/auth/login-link" class="stack" id="login-link">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <input type="hidden" name="token" value="{{token}}">
  <p class="buttons"><button type="submit">Sign in as {{person['username']}}</button>
  <a href="/">Not now</a></p>
</form>
<p class="muted">If you did not ask for this link, close this page: nothing happens until you press the button.</p>
