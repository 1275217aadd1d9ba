% rebase('layout', title='Search: ' + query if query else 'Search')
<h1>Search</h1>
<form method="get" action="{{wiki.url('search')}}" class="inline-form" role="search">
  <label for="q" class="visually-hidden">Search for</label>
  <input id="q" type="search" name="q" value="{{query}}" autofocus>
  <button type="submit">Search</button>
</form>
<p class="hint">All words must appear. Use <code>"a phrase"</code> for exact phrases and <code>word*</code> for prefixes.</p>
% if query:
% if results:
<ol class="results">
% for hit, snippet in results:
  <li>
    <a href="{{wiki.page_url(hit.path)}}">{{hit.title or hit.path}}</a>
    % if hit.title:
    <span class="muted">{{hit.path}}</span>
    % end
    <p class="snippet">{{!snippet}}</p>
  </li>
% end
</ol>
% else:
<p class="notice">No page matches <strong>{{query}}</strong>.
% if wiki.can_edit:
<a href="{{wiki.new_page_url(query)}}">Create a page named “{{query}}”</a>
% end
</p>
% end
% end
