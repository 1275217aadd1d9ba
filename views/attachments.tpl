% rebase('layout', title='Attachments of ' + page.path)
<div class="page-head">
  % include('crumbs', path=page.path)
  % include('page_actions', path=page.path, current='attachments')
</div>
<h1>Attachments of {{page.path}}</h1>
% include('message', error=error)
% if attachments:
<ul class="files">
% for file in attachments:
  <li>
    % if file.content_type.startswith('image/'):
    <img class="thumb" src="{{wiki.attachment_url(page.path, file.filename)}}" alt="">
    % end
    <a href="{{wiki.attachment_url(page.path, file.filename)}}">{{file.filename}}</a>
    <span class="muted">{{file.content_type}} · {{size(file.size)}} · <span title="{{utc(file.updated_at)}}">{{ago(file.updated_at)}}</span></span>
    <code class="markdown" title="Markdown for this page">{{markdown(file)}}</code>
    % if wiki.can_edit:
    <form method="post" action="{{wiki.url('delete-attachment', page.path)}}" class="inline"
          data-confirm="Delete {{file.filename}}?">
      <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
      <input type="hidden" name="filename" value="{{file.filename}}">
      <button type="submit" class="link">delete</button>
    </form>
    % end
  </li>
% end
</ul>
<p class="hint">In this page's text, <code>![description](photo.png)</code> shows an attached image and
<code>[text](notes.pdf)</code> links to an attached file; from another page, add its path:
<code>![](../{{page.path.rsplit('/', 1)[-1]}}/photo.png)</code> next to it.</p>
% else:
<p class="muted">This page has no attachments.</p>
% end
% if wiki.can_edit:
<h2>Upload a file</h2>
<form method="post" action="{{wiki.url('attachments', page.path)}}" enctype="multipart/form-data" class="stack">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <label for="file">File <span class="muted">(at most 10 MB; a file with the same name is replaced)</span></label>
  <input id="file" name="file" type="file" required>
  <label for="message">Note <span class="muted">(optional)</span></label>
  <input id="message" name="message" maxlength="2000" autocomplete="off">
  <p class="buttons"><button type="submit">Upload</button></p>
</form>
% end
