% rebase('layout', title='An MCP address')
<h1>This is an address for AI agents</h1>
<p><code>{{cfg.url('/w/' + slug + '/mcp')}}</code> is where MCP clients such as Claude.ai and
Claude Code read and write the pages of the wiki <strong>{{slug}}</strong>. Browsers have nothing
to see here.</p>
<p>To connect an agent to this wiki, open its <a class="button" href="{{connect_url}}">Connect an agent</a>
page: it shows how, step by step. To read the wiki yourself, go to <a href="/w/{{slug}}/">/w/{{slug}}/</a>.</p>
