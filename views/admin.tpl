% rebase('layout', title='Instance admin')
<h1>Instance admin</h1>
<p>Sign-up policy: <strong>{{cfg.signup}}</strong> (set with <code>--signup</code>).</p>

<h2>Invite someone</h2>
% if invite_url:
<p>Send this link (shown once): <code class="secret">{{invite_url}}</code></p>
% end
<form method="post" action="/admin/invites" class="inline-form">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <label for="uses">Uses</label> <input id="uses" name="uses" type="number" min="1" max="1000" value="1">
  <button type="submit">Create invite link</button>
</form>

<h2>Users</h2>
<table>
  <thead><tr><th>Username</th><th>Handle</th><th>DID</th><th>Role</th><th></th></tr></thead>
  <tbody>
  % for person in users:
    <tr>
      <td>{{person['username']}}</td><td>{{person['handle'] or '-'}}</td><td><code>{{person['did']}}</code></td>
      <td>{{'admin' if person['is_admin'] else 'member'}}</td>
      <td>
      % if person['did'] != user['did']:
        <form method="post" action="/admin/users/remove" class="inline">
          <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
          <input type="hidden" name="did" value="{{person['did']}}">
          <button type="submit" class="link">Remove</button>
        </form>
      % end
      </td>
    </tr>
  % end
  </tbody>
</table>
% include('semantic_admin')
