<div class="wikibar">
  <div class="wikibar-inner">
    <a class="wiki-title" href="{{wiki.page_url('Home')}}">{{wiki.title}}</a>
    % if wiki.row['visibility'] == 'public':
    <span class="badge" title="Anyone can read this wiki">public</span>
    % end
    <form class="search" method="get" action="{{wiki.url('search')}}" role="search">
      <input type="search" name="q" value="{{get('query', '')}}" placeholder="Search this wiki"
             aria-label="Search this wiki">
      <button type="submit" class="secondary">Search</button>
    </form>
    <nav class="wikinav" aria-label="Wiki">
      <a href="{{wiki.url('pages')}}">All pages</a>
      <a href="{{wiki.url('recent')}}">Recent changes</a>
      % if wiki.can_edit:
      <a href="{{wiki.new_page_url()}}">New page</a>
      % end
      % if wiki.role:
      <a href="{{wiki.url('connect')}}">Connect an agent</a>
      % end
      % if wiki.is_owner:
      <a href="{{wiki.url('settings')}}">Settings</a>
      % end
    </nav>
  </div>
</div>
