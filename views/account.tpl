% rebase('layout', title='Your account')
<h1>Your account</h1>
<dl class="facts">
  <dt>Username</dt><dd>{{user['username']}}</dd>
  <dt>Handle</dt><dd>{{user['handle'] or '(none verified)'}}</dd>
  <dt>DID</dt><dd><code>{{user['did']}}</code></dd>
</dl>

<h2>Sessions</h2>
<table>
  <thead><tr><th>Browser</th><th>Signed in</th><th>Last seen</th><th></th></tr></thead>
  <tbody>
  % import time
  % for session in sessions:
    <tr>
      <td>{{session['user_agent'][:80] or 'unknown'}}</td>
      <td>{{time.strftime('%Y-%m-%d %H:%M', time.gmtime(session['created_at']))}} UTC</td>
      <td>{{time.strftime('%Y-%m-%d %H:%M', time.gmtime(session['last_seen']))}} UTC</td>
      <td>
      % if session['id'] == current_session:
        this browser
      % else:
        <form method="post" action="/account/sessions/revoke" class="inline">
          <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
          <input type="hidden" name="session_id" value="{{session['id']}}">
          <button type="submit" class="link">End</button>
        </form>
      % end
      </td>
    </tr>
  % end
  </tbody>
</table>
<form method="post" action="/account/logout-everywhere">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <button type="submit">Sign out everywhere</button>
</form>

<h2>Delete your account</h2>
<details class="danger">
  <summary>Delete your account, your wikis, your memberships and every app connection</summary>
  <form method="post" action="/account/delete" class="stack">
    <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
    <label for="confirm">Type <strong>{{user['handle'] or user['username']}}</strong> to confirm</label>
    <input id="confirm" name="confirm" autocomplete="off" required>
    <button type="submit" class="danger">Delete my account for good</button>
  </form>
</details>
