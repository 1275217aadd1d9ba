% rebase('layout', title=path)
<div class="page-head">
  % include('crumbs', path=path)
</div>
<h1>{{path.rsplit('/', 1)[-1]}}</h1>
<p class="notice">There is no page called <strong>{{path}}</strong> yet; these pages are in its folder.
% if wiki.can_edit:
<a class="button" href="{{wiki.new_page_url(path)}}">Create this page</a>
% end
</p>
<ul class="index folder-list">
% for entry in entries:
  <li>
    % if entry.page:
    <a href="{{wiki.page_url(entry.path)}}">{{entry.name}}</a>
    % if entry.page.title and entry.page.title != entry.name:
    <span class="title">{{entry.page.title}}</span>
    % end
    <span class="muted"><span title="{{utc(entry.page.updated_at)}}">{{ago(entry.page.updated_at)}}</span></span>
    % else:
    <a class="folder" href="{{wiki.page_url(entry.path)}}">{{entry.name}}/</a>
    % end
    % if entry.pages_below:
    <span class="muted">{{counted(entry.pages_below, 'page')}} inside</span>
    % end
  </li>
% end
</ul>
