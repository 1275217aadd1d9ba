% rebase('layout', title='Sign in')
<h1>Sign in</h1>
% if error:
<p class="error" role="alert">{{error}}</p>
% end
<form method="post" action="/auth/login" class="stack">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <input type="hidden" name="return_to" value="{{return_to}}">
  % if invite:
  <input type="hidden" name="invite" value="{{invite}}">
  <p>You have an invitation. Sign in with your ATProto identity to create your account.</p>
  % end
  <label for="identifier">Your handle, DID or account server</label>
  <input id="identifier" name="identifier" value="{{identifier}}" placeholder="alice.bsky.social"
         autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus>
  <p class="muted">A Bluesky handle like <code>alice.bsky.social</code>, a DID, or your PDS's
  https:// address. You will confirm at your account's server; robotwtf only learns who you are.</p>
  <button type="submit">Sign in</button>
</form>
<form method="post" action="/auth/login" class="stack">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <input type="hidden" name="return_to" value="{{return_to}}">
  % if invite:
  <input type="hidden" name="invite" value="{{invite}}">
  % end
  <input type="hidden" name="identifier" value="https://bsky.social">
  <p class="muted">No account yet? <button type="submit" class="link">Create one at bsky.social</button></p>
</form>
