% rebase('layout', title='Your wikis')
<h1>Your wikis</h1>
% if wikis:
<ul class="wikis">
  % for wiki in wikis:
  <li><a href="/w/{{wiki['slug']}}/">{{wiki['title']}}</a> <span class="muted">/w/{{wiki['slug']}} · {{wiki['role']}}</span></li>
  % end
</ul>
% else:
<p>You have no wikis yet.</p>
% end
<p><a href="/account/apps">Connected apps and access tokens</a></p>
