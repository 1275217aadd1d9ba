% rebase('layout', title=path)
<div class="page-head">
  % include('crumbs', path=path)
</div>
<h1>{{path}}</h1>
<p class="notice">{{message}}</p>
<p class="buttons">
% if wiki.can_edit:
  <a class="button" href="{{wiki.new_page_url(path)}}">Create this page</a>
% end
% if had_history:
  <a href="{{wiki.url('history', path)}}">See its history</a>
% end
  <a href="{{wiki.url('pages')}}">All pages</a>
</p>
