% rebase('layout', title='Changes to ' + diff.new.current_path)
<div class="page-head">
  % include('crumbs', path=diff.new.current_path)
</div>
<h1>Changes to {{diff.new.current_path}}</h1>
<dl class="facts">
% for label, rev in (('From', diff.old), ('To', diff.new)):
  <dt>{{label}}</dt>
  <dd><a href="{{wiki.revision_url(rev.id)}}"><code>{{rev.short_id}}</code></a> {{rev.path}} ·
      % include('person', username=rev.author_username, handle=rev.author_handle, fallback=rev.imported_author)
      {{via(rev.via)}} · <span title="{{utc(rev.created_at)}}">{{ago(rev.created_at)}}</span>
      % if rev.message:
      <br><span class="message">“{{rev.message}}”</span>
      % end
  </dd>
% end
</dl>
% if lines:
% include('diff_block', lines=lines)
% else:
<p class="notice">The two versions have the same text.</p>
% end
<p><a href="{{wiki.url('history', diff.new.current_path)}}">Back to the history</a></p>
