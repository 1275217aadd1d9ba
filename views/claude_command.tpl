<pre class="copyable"><code id="claude-command">claude mcp add --transport http {{slug}} {{mcp_url}} --header "Authorization: Bearer {{token}}"</code></pre>
<p><button type="button" class="secondary copy" data-copy="claude-command" hidden>Copy the command</button></p>
