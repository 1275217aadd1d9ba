% rebase('layout', title='Delete ' + page.path)
<div class="page-head">
  % include('crumbs', path=page.path)
  % include('page_actions', path=page.path, current='delete')
</div>
<h1>Delete {{page.path}}?</h1>
<p>The page leaves the page list, search and links. Its history stays, and you can restore it
from there at any time.</p>
<form method="post" action="{{wiki.url('delete', page.path)}}" class="stack">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <input type="hidden" name="base_revision" value="{{page.revision}}">
  <label for="message">Why? <span class="muted">(optional)</span></label>
  <input id="message" name="message" maxlength="2000" autocomplete="off">
  <p class="buttons"><button type="submit" class="danger">Delete the page</button>
    <a href="{{wiki.page_url(page.path)}}">Cancel</a></p>
</form>
