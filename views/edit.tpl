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
<form method="post" action="{{wiki.new_page_url() if creating else wiki.url('edit', path)}}" class="editor"
      data-unsaved-warning>
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  % if creating:
  <label for="path">Page path</label>
  <input id="path" name="path" value="{{path}}" required placeholder="Projects/Garden" autocomplete="off"
         {{!'' if path else 'autofocus'}}>
  <p class="hint">Use <code>/</code> for folders. Letters of any language are fine.</p>
  % else:
  <input type="hidden" name="base_revision" value="{{base_revision}}">
  % end
  <label for="content">Content <span class="muted">(Markdown)</span></label>
  <textarea id="content" name="content" rows="22" {{!'autofocus' if path else ''}}>
{{content}}</textarea>
  <p class="hint">Link to another page with <code>[[Page name]]</code> or <code>[[Page name|text to show]]</code>.</p>
  <label for="message">What did you change? <span class="muted">(optional)</span></label>
  <input id="message" name="message" value="{{message}}" maxlength="2000" autocomplete="off">
  <p class="buttons">
    <button type="submit">Save</button>
    <a href="{{wiki.page_url(path) if path and not creating else wiki.page_url('Home')}}">Cancel</a>
  </p>
</form>
