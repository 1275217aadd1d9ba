% rebase('layout', title='Connected apps')
% import time
% def when(t):
%   return time.strftime('%Y-%m-%d %H:%M', time.gmtime(t)) + ' UTC' if t else 'never'
% end
<h1>Connected apps</h1>
<p>Apps such as Claude.ai that you allowed to use a wiki through MCP. Revoking one stops it at once.</p>
% if grants:
<table>
  <thead><tr><th>App</th><th>Sends back to</th><th>Wiki</th><th>Allowed</th><th>Connected</th><th>Last used</th><th></th></tr></thead>
  <tbody>
  % for grant in grants:
    <tr>
      <td>{{grant['client_name'] or 'unnamed app'}}</td>
      <td><code>{{redirect_host(grant['redirect_uri'])}}</code></td>
      <td>/w/{{grant['wiki_slug']}}</td>
      <td>{{grant['scope']}}</td>
      <td>{{when(grant['created_at'])}}</td>
      <td>{{when(grant['last_used_at'])}}</td>
      <td>
        <form method="post" action="/account/apps/grants/{{grant['id']}}/revoke" class="inline">
          <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
          <button type="submit" class="link">Revoke</button>
        </form>
      </td>
    </tr>
  % end
  </tbody>
</table>
% else:
<p class="muted">No apps are connected.</p>
% end

<h2>Personal access tokens</h2>
<p>A token lets a program use one wiki through MCP as you, sent as <code>Authorization: Bearer &lt;token&gt;</code>
(for example <code>claude mcp add --transport http WIKI {{cfg.public_url}}/w/WIKI/mcp --header "Authorization: Bearer TOKEN"</code>).</p>
% if created:
<p><strong>Your new token "{{created['name']}}" for /w/{{created['wiki']}}</strong>, shown only this once:</p>
<p><span id="new-token"><code class="secret">{{created['token']}}</code></span>
<button type="button" class="secondary copy" data-copy="new-token" hidden>Copy</button></p>
<p>For Claude Code, run:</p>
% include('claude_command', slug=created['wiki'], mcp_url=cfg.url('/w/' + created['wiki'] + '/mcp'), token=created['token'])
<script src="/static/copy.js" defer></script>
% end
% if problem:
<p class="error">{{problem}}</p>
% end
% if tokens:
<table>
  <thead><tr><th>Name</th><th>Wiki</th><th>Allowed</th><th>Created</th><th>Expires</th><th>Last used</th><th></th></tr></thead>
  <tbody>
  % for token in tokens:
    <tr>
      <td>{{token['name']}}</td>
      <td>/w/{{token['wiki_slug']}}</td>
      <td>{{token['scope']}}</td>
      <td>{{when(token['created_at'])}}</td>
      <td>{{when(token['expires_at']) if token['expires_at'] else 'no expiry'}}</td>
      <td>{{when(token['last_used_at'])}}</td>
      <td>
        <form method="post" action="/account/apps/tokens/{{token['id']}}/revoke" class="inline">
          <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
          <button type="submit" class="link">Revoke</button>
        </form>
      </td>
    </tr>
  % end
  </tbody>
</table>
% end
% if wikis:
<form method="post" action="/account/apps/tokens" class="stack">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <label for="name">Name</label>
  <input id="name" name="name" maxlength="100" required>
  <label for="wiki">Wiki</label>
  <select id="wiki" name="wiki">
  % for option in wikis:
    <option value="{{option['slug']}}">{{option['title']}} (/w/{{option['slug']}}, {{option['role']}})</option>
  % end
  </select>
  <fieldset>
    <legend>Allow it to</legend>
  % scope_names = {'wiki:read': 'Read', 'wiki:write': 'Write'}
  % for scope, label in labels.items():
    <label class="choice"><input type="checkbox" name="scope" value="{{scope}}" checked>
      <span><strong>{{scope_names[scope]}}</strong> <code>{{scope}}</code></span>
      <span class="explain">{{label[:1].upper() + label[1:]}}.</span></label>
  % end
    <p class="muted">On a wiki where you are a viewer, a token can only read.</p>
  </fieldset>
  <label for="expires_days">Expires after (days, empty for never)</label>
  <input id="expires_days" name="expires_days" type="number" min="1" max="3650">
  <button type="submit">Create token</button>
</form>
% else:
<p class="muted">Tokens are for a wiki; you are not a member of any yet.</p>
% end
