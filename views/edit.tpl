% rebase('layout', title='New page' if creating else 'Edit ' + path)
% if creating:
<h1>New page</h1>
% else:
<div class="page-head">
  % include('crumbs', path=path)
</div>
<h1>Editing {{path}}</h1>
% end
% include('message', error=error)
<form method="post" action="{{wiki.new_page_url() if creating else wiki.url('edit', path)}}"
      class="editor{{' previewing' if preview is not None else ''}}" data-unsaved-warning data-editor
      data-preview-url="{{wiki.url('preview')}}" data-max-bytes="{{max_bytes}}"
      data-upload-url="{{'' if creating else wiki.url('attachments', path)}}">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  % if creating:
  <label for="path">Page path</label>
  <input id="path" name="path" value="{{path}}" required placeholder="Projects/Garden" autocomplete="off"
         {{!'' if path else 'autofocus'}}>
  <p class="hint">Use <code>/</code> for folders. Letters of any language are fine.</p>
  % else:
  <input type="hidden" name="base_revision" value="{{base_revision}}">
  % end
  <div class="editor-head">
    <label for="content">Content <span class="muted">(Markdown)</span></label>
    <div class="toolbar" role="toolbar" aria-label="Formatting" hidden>
      <button type="button" class="tool" data-tool="heading" title="Heading">H</button>
      <button type="button" class="tool" data-tool="bold" title="Bold (Ctrl+B)"><b>B</b></button>
      <button type="button" class="tool" data-tool="italic" title="Italic (Ctrl+I)"><i>I</i></button>
      <button type="button" class="tool" data-tool="link" title="Link (Ctrl+K)">Link</button>
      <button type="button" class="tool" data-tool="wikilink" title="Link to a page of this wiki">[[ ]]</button>
      <button type="button" class="tool" data-tool="list" title="Bulleted list">• List</button>
      <button type="button" class="tool" data-tool="task" title="Task list">☐ Task</button>
      <button type="button" class="tool" data-tool="code" title="Code">&lt;/&gt;</button>
      <button type="button" class="tool" data-tool="table" title="Table">Table</button>
      <button type="button" class="tool" data-tool="image" title="Image">Image</button>
      <button type="button" class="tool" data-tool="attach" title="Attach a file">Attach…</button>
      <input type="file" class="attach-input" multiple hidden>
    </div>
    <div class="pane-switch" role="group" aria-label="Show" hidden>
      <button type="button" class="tool" data-pane="write" aria-pressed="true">Write</button>
      <button type="button" class="tool" data-pane="preview" aria-pressed="false">Preview</button>
    </div>
  </div>
  <div class="editor-panes">
    <textarea id="content" name="content" rows="22" {{!'autofocus' if path else ''}}>
{{content}}</textarea>
    <section class="preview" aria-label="Preview" aria-live="polite"{{!'' if preview is not None else ' hidden'}}>
      <div class="preview-body content">{{!preview or ''}}</div>
    </section>
  </div>
  <p class="status" role="status" aria-live="polite"></p>
  <p class="hint">A page holds up to {{'{:,}'.format(max_bytes)}} bytes of text (about {{max_bytes // 1_000_000}} MB).
    Link to another page with <code>[[Page name]]</code> or <code>[[Page name|text to show]]</code>.
    % if creating:
    Files can be attached once the page is saved.
    % else:
    Paste, drop or pick files to attach them to this page; <code>![](photo.png)</code> shows an attached image.
    % end
  </p>
  <label for="message">What did you change? <span class="muted">(optional)</span></label>
  <input id="message" name="message" value="{{message}}" maxlength="2000" autocomplete="off">
  <p class="buttons">
    <button type="submit">Save</button>
    <button type="submit" name="preview" value="1" class="secondary">Preview</button>
    <a href="{{wiki.page_url(path) if path and not creating else wiki.page_url('Home')}}">Cancel</a>
  </p>
</form>
