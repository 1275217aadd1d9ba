% rebase('layout', title='Your wikis')
<h1>Your wikis</h1>
% if own:
<ul class="cards">
  % for wiki_row in own:
  % include('wiki_card', w=wiki_row)
  % end
</ul>
% else:
<p class="muted">You have no wikis yet. Create one below.</p>
% end

% if shared:
<h2>Shared with you</h2>
<ul class="cards">
  % for wiki_row in shared:
  % include('wiki_card', w=wiki_row)
  % end
</ul>
% end

<section class="panel" id="create">
<h2>Create a wiki</h2>
% include('message', error=error)
<form method="post" action="/wikis" class="stack">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <label for="slug">Short name <span class="muted">(its address: /w/<em>name</em>)</span></label>
  <input id="slug" name="slug" value="{{form.get('slug', '')}}" required minlength="3" maxlength="30"
         pattern="[a-z0-9][a-z0-9\-]{1,28}[a-z0-9]" autocapitalize="none" spellcheck="false"
         placeholder="garden-notes">
  <p class="hint">3–30 characters: lower-case letters, digits and hyphens.</p>
  <label for="title">Title</label>
  <input id="title" name="title" value="{{form.get('title', '')}}" maxlength="200" placeholder="Garden notes">
  <label for="description">Description <span class="muted">(optional)</span></label>
  <textarea id="description" name="description" rows="2" maxlength="2000">
{{form.get('description', '')}}</textarea>
  <p class="buttons"><button type="submit">Create wiki</button></p>
</form>
</section>

<p><a href="/account/apps">Connected apps and access tokens</a></p>
