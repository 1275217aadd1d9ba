% index = get('semantic_index')
% if index is not None:
<h2>Semantic search</h2>
<p>Embeddings from <code>{{index.model}}</code> at <code>{{index.host}}</code>{{', %d dimensions' % index.dimensions if index.dimensions else ''}};
  index last changed {{index.indexed_at}}. <code>robotwtf reindex</code> rebuilds it.</p>
% if index.last_error:
<p class="notice">Last error of the embeddings server ({{index.last_error_at}}): {{index.last_error}}</p>
% end
<table>
  <thead><tr><th>Wiki</th><th>Chunks indexed</th><th>Chunks waiting</th><th>Pages waiting</th><th>Chunks refused</th></tr></thead>
  <tbody>
  % for slug, state in index.wikis:
    <tr><td>{{slug}}</td><td>{{state.indexed}}</td><td>{{state.pending}}</td><td>{{state.stale_pages}}</td><td>{{state.failed}}</td></tr>
  % end
  </tbody>
</table>
% end
