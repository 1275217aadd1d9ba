<section class="{{'' if get('standalone') else 'panel '}}connect" id="connect">
% if not get('standalone'):
<h2>Connect an agent</h2>
% end
<p>AI agents such as Claude read and write this wiki's pages over MCP, acting as you, with no more
than you allow. Every change they make is kept in the history with their name.</p>

<h3>This wiki's MCP address</h3>
<p class="copyable"><code id="mcp-url">{{mcp_url}}</code>
<button type="button" class="secondary copy" data-copy="mcp-url" hidden>Copy</button></p>
% if unreachable:
<div class="notice" id="unreachable" role="note">
  <p><strong>Claude.ai cannot reach this address:</strong> {{unreachable}}. Claude.ai connects from
  Anthropic's servers on the internet, so pasting this address there fails.</p>
  <p>To connect Claude.ai, give this wiki an https address on the internet: put robotwtf behind a
  reverse proxy that terminates TLS and start it with <code>--public-url https://your.domain</code>
  (the README's section "Running behind a reverse proxy (https)" has Caddy, nginx and systemd
  examples). This page then shows the new address. Agents on this computer, such as Claude Code
  below, can use the address as it is.</p>
</div>
% end

<h3>Claude.ai</h3>
% if unreachable:
<p class="muted">Not with this address; see above.</p>
% else:
<ol>
  <li>In Claude.ai, open <strong>Settings → Connectors</strong> and choose <strong>Add custom connector</strong>.</li>
  <li>Name it (for example “{{wiki.title}}”) and paste the MCP address above. Leave the OAuth client ID
  and secret empty.</li>
  <li>Claude sends you here to sign in and approve what it may do. There is no token to copy.</li>
</ol>
% end

<h3>Claude Code</h3>
% if get('token'):
<p id="new-token">Your new personal access token <strong>{{token_name}}</strong> is in this command, shown
only this once. Run it in a terminal:</p>
% include('claude_command', slug=wiki.slug, mcp_url=mcp_url, token=token)
<p class="hint">Treat the token like a password: whoever has it can use this wiki as you. Revoke it on
<a href="/account/apps">Connected apps</a> if it leaks.</p>
% elif user and wiki.role:
<form method="post" action="{{wiki.url('connect')}}" class="inline-form">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <button type="submit">Create a token and show the command</button>
</form>
<p class="hint">Makes a personal access token for this wiki only, allowed to {{token_scopes}}, and
shows the whole <code>claude mcp add</code> command once. Your tokens are listed, and can be revoked, on
<a href="/account/apps">Connected apps</a>.</p>
% else:
<p class="muted">Members of this wiki can create a token for Claude Code here{{'' if user else ' once signed in'}}.</p>
% end

<h3>Other MCP clients</h3>
<p>Any client that speaks MCP's Streamable HTTP transport can use the address above: signing in
through OAuth as Claude.ai does, or sending a personal access token as
<code>Authorization: Bearer &lt;token&gt;</code> as Claude Code does.</p>
<script src="/static/copy.js" defer></script>
</section>
