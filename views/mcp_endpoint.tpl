% rebase('layout', title='An MCP address')
<h1>This is an address for AI agents</h1>
<p><code>{{cfg.url('/w/' + slug + '/mcp')}}</code> is where MCP clients such as Claude.ai and
Claude Code read and write the pages of the wiki <strong>{{slug}}</strong>. Browsers have nothing
to see here: the wiki's "Connect an agent" page shows, step by step, how to connect an agent.</p>
<p class="buttons"><a class="button" href="{{connect_url}}">Connect an agent</a>
<a href="/w/{{slug}}/">Open the wiki</a></p>
