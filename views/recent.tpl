% rebase('layout', title='Recent changes')
<h1>Recent changes</h1>
<ol class="revisions recent">
% for change in changes:
  <li>
    <a class="rev" href="{{wiki.revision_url(change.id)}}"><code>{{change.short_id}}</code></a>
    % if change.page_deleted:
    <span class="path">{{change.path}}</span>
    % else:
    <a class="path" href="{{wiki.page_url(change.current_path)}}">{{change.current_path}}</a>
    % end
    <span class="summary">
      % include('change', change=change)
    </span>
  </li>
% end
</ol>
