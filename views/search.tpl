% rebase('layout', title='Search: ' + query if query else 'Search')
<h1>Search</h1>
<form method="get" action="{{wiki.url('search')}}" class="inline-form" role="search">
  <label for="q" class="visually-hidden">Search for</label>
  <input id="q" type="search" name="q" value="{{query}}" autofocus>
  <button type="submit">Search</button>
</form>
<p class="hint">Finds pages containing every word, also as the start of a longer word (<code>tomat</code> finds
Tomato). Use <code>"a phrase"</code> for exact phrases.</p>
% if query:
<section class="search-section search-words" aria-labelledby="word-matches">
  <h2 id="word-matches" class="search-count">
  % if total:
    {{counted(total, 'page')}} match{{'es' if total == 1 else ''}}
    % if total > len(results):
    <span class="muted">(the best {{len(results)}} are shown)</span>
    % end
  % else:
    No page matches <strong>{{query}}</strong>
  % end
  </h2>
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
  <p class="notice">
    % if suggestions:
    Did you mean
    % for index, path in enumerate(suggestions):
    <a href="{{wiki.page_url(path)}}">{{path}}</a>{{'?' if index == len(suggestions) - 1 else ','}}
    % end
    % end
    % if wiki.can_edit:
    <a href="{{wiki.new_page_url(query)}}">Create a page named “{{query}}”</a>
    % end
  </p>
  % end
</section>
% end
% include('semantic_results')
