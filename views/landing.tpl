% rebase('layout', title='Welcome')
<h1>A wiki for you and your agents</h1>
<p>robotwtf keeps shared, persistent notes that people edit in the browser and AI agents
(Claude.ai, Claude Code, any MCP client) read and write through MCP.</p>
<p><a class="button" href="/auth/login">Sign in</a></p>
