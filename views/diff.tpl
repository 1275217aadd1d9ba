% rebase('layout', title='Changes to ' + diff.new.current_path)
<div class="page-head">
  % include('crumbs', path=diff.new.current_path)
</div>
<h1>Changes to {{diff.new.current_path}}</h1>
<dl class="facts">
  <dt>From</dt>
  <dd><a href="{{wiki.revision_url(diff.old.id)}}"><code>{{diff.old.short_id}}</code></a> {{diff.old.path}} ·
      {{diff.old.author_handle or diff.old.author_did}} · {{utc(diff.old.created_at)}}</dd>
  <dt>To</dt>
  <dd><a href="{{wiki.revision_url(diff.new.id)}}"><code>{{diff.new.short_id}}</code></a> {{diff.new.path}} ·
      {{diff.new.author_handle or diff.new.author_did}} · {{utc(diff.new.created_at)}}</dd>
</dl>
% if lines:
% include('diff_block', lines=lines)
% else:
<p class="notice">The two versions have the same text.</p>
% end
<p><a href="{{wiki.url('history', diff.new.current_path)}}">Back to the history</a></p>
