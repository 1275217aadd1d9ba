% rebase('layout', title=revision.path + ' at ' + revision.short_id)
<div class="page-head">
  % include('crumbs', path=revision.path)
</div>
<div class="notice">
  <p>This is revision <code>{{revision.short_id}}</code> of
  % if revision.page_deleted:
  <strong>{{revision.current_path}}</strong> (now deleted):
  % else:
  <a href="{{wiki.page_url(revision.current_path)}}">{{revision.current_path}}</a>:
  % end
  % include('change', change=revision)
  </p>
  <p class="buttons">
    % if current and current != revision.id:
    <a href="{{wiki.diff_url(revision.id, current)}}">Compare with the current version</a>
    % end
    <a href="{{wiki.url('history', revision.current_path)}}">History</a>
    % if wiki.can_edit and current != revision.id:
    <form method="post" action="{{wiki.revision_url(revision.id)}}/restore" class="inline">
      <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
      <button type="submit">Restore this version</button>
    </form>
    % end
  </p>
</div>
% include('rendered', rendered=rendered, title=revision.path.rsplit('/', 1)[-1])
