% similar = get('similar')
% if similar is not None:
<section class="search-section search-similar" aria-labelledby="similar-heading">
  <h2 id="similar-heading">Similar meaning</h2>
  % if similar.error:
  <p class="notice">{{similar.error}}</p>
  % elif similar.hits:
  <ol class="results">
  % for hit in similar.hits:
    <li>
      <a href="{{wiki.page_url(hit.path)}}">{{hit.title}}</a>
      <span class="muted">{{hit.path}}{{' › ' + hit.section if hit.section else ''}} · similarity {{'%.2f' % hit.score}}</span>
      <p class="snippet">{{hit.text if len(hit.text) <= 320 else hit.text[:320].rsplit(' ', 1)[0] + ' …'}}</p>
    </li>
  % end
  </ol>
  % else:
  <p class="hint">No page is close in meaning to <strong>{{query}}</strong>.</p>
  % end
  % if similar.note:
  <p class="hint">{{similar.note}}</p>
  % end
</section>
% end
