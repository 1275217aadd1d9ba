% rebase('layout', title='Create your account')
<h1>Create your account</h1>
<p>Signed in as <strong>{{handle or did}}</strong>.</p>
% if refusal:
<p class="error" role="alert">{{refusal}}</p>
% else:
% include('message', error=error)
<form method="post" action="/auth/signup" class="stack">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <label for="username">Choose a username</label>
  <input id="username" name="username" value="{{username}}" pattern="[a-z0-9][a-z0-9\-]{1,28}[a-z0-9]"
         minlength="3" maxlength="30" required autocapitalize="none" spellcheck="false">
  <p class="muted">3–30 characters: lower-case letters, digits and hyphens.</p>
  <button type="submit">Create account</button>
</form>
% end
