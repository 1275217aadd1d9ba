<li class="card">
  <a class="card-title" href="/w/{{w['slug']}}/">{{w['title']}}</a>
  <span class="muted">/w/{{w['slug']}} · {{w['role']}}{{' · public' if w['visibility'] == 'public' else ''}}</span>
  % if w['description']:
  <p>{{w['description']}}</p>
  % end
</li>
