% rebase('layout', title='Connect an agent')
<h1>Connect an agent</h1>
% include('connect_panel', standalone=True)
