<nav class="actions" aria-label="Page actions">
  % if wiki.can_edit:
  <a class="button" href="{{wiki.url('edit', path)}}">Edit</a>
  % end
  <a href="{{wiki.page_url(path)}}"{{!' aria-current="page"' if current == 'view' else ''}}>View</a>
  <a href="{{wiki.url('history', path)}}"{{!' aria-current="page"' if current == 'history' else ''}}>History</a>
  <a href="{{wiki.url('attachments', path)}}"{{!' aria-current="page"' if current == 'attachments' else ''}}>Attachments</a>
  % if wiki.can_edit:
  <a href="{{wiki.url('rename', path)}}"{{!' aria-current="page"' if current == 'rename' else ''}}>Rename</a>
  <a href="{{wiki.url('delete', path)}}"{{!' aria-current="page"' if current == 'delete' else ''}}>Delete</a>
  % end
</nav>
