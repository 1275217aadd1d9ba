% rebase('layout', title='Edit conflict: ' + path)
<h1>This page changed while you were editing</h1>
% if current is not None:
<p class="notice" role="alert" id="other-change">
% include('person', username=other_change.author_username, handle=other_change.author_handle, fallback=other_change.imported_author)
changed <a href="{{wiki.page_url(current.path)}}">{{current.path}}</a> {{via(other_change.via)}}
<span title="{{utc(other_change.created_at)}}">{{ago(other_change.created_at)}}</span>{{': “' + other_change.message + '”' if other_change.message else ''}}
(revision <a href="{{wiki.revision_url(other_change.id)}}"><code>{{other_change.short_id}}</code></a>),
after you started editing.</p>
<p>Nothing is lost: the other change is saved, and your text is in the form below. Merge the two
versions there and save again (your save will replace the current version), or cancel to keep it as it is.</p>
<h2>Differences from the current version to yours</h2>
% include('diff_block', lines=lines)
<div class="columns">
  <section>
    <h2>Current version <span class="muted">(revision <a href="{{wiki.revision_url(current.revision)}}"><code>{{current.revision[:8]}}</code></a>)</span></h2>
    <pre class="source">{{current.content}}</pre>
  </section>
  <section>
    <h2>Your version</h2>
    <form method="post" action="{{wiki.url('edit', current.path)}}" class="editor" data-unsaved-warning>
      <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
      <input type="hidden" name="base_revision" value="{{current.revision}}">
      <label for="content" class="visually-hidden">Your version</label>
      <textarea id="content" name="content" rows="22">
{{content}}</textarea>
      <label for="message">What did you change? <span class="muted">(optional)</span></label>
      <input id="message" name="message" value="{{message}}" maxlength="2000" autocomplete="off">
      <p class="buttons">
        <button type="submit">Save my version</button>
        <a href="{{wiki.page_url(current.path)}}">Cancel</a>
      </p>
    </form>
  </section>
</div>
% else:
<p class="notice" role="alert">The page is no longer at <strong>{{path}}</strong>: someone deleted or renamed it. Your text is
below; save it as a new page, or copy it somewhere safe.</p>
<form method="post" action="{{wiki.new_page_url()}}" class="editor" data-unsaved-warning>
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <label for="path">Page path</label>
  <input id="path" name="path" value="{{path}}" required>
  <label for="content">Your version</label>
  <textarea id="content" name="content" rows="22">
{{content}}</textarea>
  <label for="message">What did you change? <span class="muted">(optional)</span></label>
  <input id="message" name="message" value="{{message}}" maxlength="2000" autocomplete="off">
  <p class="buttons">
    <button type="submit">Save as a new page</button>
    <a href="{{wiki.url('history', path)}}">See the page's history</a>
  </p>
</form>
% end
