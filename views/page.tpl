% rebase('layout', title=page.display_title)
<div class="page-head" data-saved-page="{{page.path}}">
  % include('crumbs', path=page.path)
  % include('page_actions', path=page.path, current='view')
</div>
% if page.category or page.tags:
<p class="tags">
  % if page.category:
  <span class="category">{{page.category}}</span>
  % end
  % for tag in page.tags:
  <span class="tag">#{{tag}}</span>
  % end
</p>
% end
% include('rendered', rendered=rendered, title=page.display_title)
<footer class="page-foot">
  % if attachments:
  <section>
    <h2>Attachments</h2>
    <ul class="files">
    % for file in attachments:
      <li><a href="{{wiki.attachment_url(page.path, file.filename)}}">{{file.filename}}</a> <span class="muted">{{size(file.size)}}</span></li>
    % end
    </ul>
  </section>
  % end
  % if links.linked_from:
  <section>
    <h2>Linked from</h2>
    <ul class="backlinks">
    % for source in links.linked_from:
      <li><a href="{{wiki.page_url(source)}}">{{source}}</a></li>
    % end
    </ul>
  </section>
  % end
  <p class="muted">Last changed <span title="{{utc(last_change.created_at)}}">{{ago(last_change.created_at)}}</span>
    by
    % include('person', username=last_change.author_username, handle=last_change.author_handle, fallback=last_change.imported_author)
    {{via(last_change.via)}} ·
    revision <a href="{{wiki.revision_url(page.revision)}}"><code>{{page.revision[:8]}}</code></a></p>
</footer>
