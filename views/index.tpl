% rebase('layout', title='All pages')
<h1>All pages</h1>
<p class="muted">{{counted(len(pages), 'page')}}</p>
<ul class="index">
% for page in pages:
  <li>
    <a href="{{wiki.page_url(page.path)}}">{{page.path}}</a>
    % if page.title and page.title != page.path.rsplit('/', 1)[-1]:
    <span class="title">{{page.title}}</span>
    % end
    <span class="muted"><span title="{{utc(page.updated_at)}}">{{ago(page.updated_at)}}</span> · {{size(page.size)}}</span>
  </li>
% end
</ul>
% if deleted:
<h2>Deleted pages</h2>
<ul class="index">
% for page in deleted:
  <li>
    <a href="{{wiki.url('history', page.path)}}">{{page.path}}</a>
    <span class="muted">deleted <span title="{{utc(page.deleted_at)}}">{{ago(page.deleted_at)}}</span></span>
  </li>
% end
</ul>
% end
