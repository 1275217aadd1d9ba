% rebase('layout', title='History of ' + path)
<div class="page-head">
  % include('crumbs', path=path)
  % if not deleted:
  % include('page_actions', path=path, current='history')
  % end
</div>
<h1>History of {{path}}</h1>
% if deleted:
<p class="notice">This page is deleted. Restore any of its versions to bring it back.</p>
% end
<form method="get" action="{{wiki.url('diff')}}" class="history">
  <p class="buttons"><button type="submit" class="secondary">Compare the selected versions</button>
  <span class="muted">Choose an older version on the left and a newer one on the right.</span></p>
  <ol class="revisions">
  % for i, rev in enumerate(revisions):
    <li>
      <span class="pick">
        <input type="radio" name="from" value="{{rev.id}}" aria-label="Compare from {{rev.short_id}}"{{!' checked' if i == 1 else ''}}>
        <input type="radio" name="to" value="{{rev.id}}" aria-label="Compare to {{rev.short_id}}"{{!' checked' if i == 0 else ''}}>
      </span>
      <a class="rev" href="{{wiki.revision_url(rev.id)}}"><code>{{rev.short_id}}</code></a>
      <span class="summary">
        % include('change', change=rev)
        % if rev.old_path:
        <span class="muted">(was {{rev.old_path}})</span>
        % end
      </span>
      <span class="rev-actions">
        % if i + 1 < len(revisions) and rev.kind != 'attachment':
        <a href="{{wiki.diff_url(revisions[i + 1].id, rev.id)}}">changes</a>
        % end
        % if wiki.can_edit and (deleted or i > 0):
        <button type="submit" form="restore-{{rev.id}}" class="link">restore</button>
        % end
      </span>
    </li>
  % end
  </ol>
</form>
% if wiki.can_edit:
% for i, rev in enumerate(revisions):
% if deleted or i > 0:
<form id="restore-{{rev.id}}" method="post" action="{{wiki.revision_url(rev.id)}}/restore" class="hidden-form">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
</form>
% end
% end
% end
% if len(revisions) == 200:
<p class="muted">Showing the latest 200 changes.</p>
% end
