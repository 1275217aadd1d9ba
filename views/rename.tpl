% rebase('layout', title='Rename ' + page.path)
<div class="page-head">
  % include('crumbs', path=page.path)
  % include('page_actions', path=page.path, current='rename')
</div>
<h1>Rename {{page.path}}</h1>
% include('message', error=error)
<p>The page keeps its history, and links to it from other pages are updated to the new path.</p>
<form method="post" action="{{wiki.url('rename', page.path)}}" class="stack">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <input type="hidden" name="base_revision" value="{{page.revision}}">
  <label for="new_path">New path</label>
  <input id="new_path" name="new_path" value="{{new_path}}" required autocomplete="off" autofocus>
  % if subpages:
  <label class="choice"><input type="checkbox" name="subpages" value="move"{{!' checked' if move_subpages else ''}}>
    Also move the {{counted(len(subpages), 'page')}} under {{page.path}}/ along with it</label>
  <p class="hint">{{', '.join(subpages[:5])}}{{' and %d more' % (len(subpages) - 5) if len(subpages) > 5 else ''}}: each keeps
  its place under the new path, and links to them are updated too.</p>
  % end
  <label for="message">Why? <span class="muted">(optional)</span></label>
  <input id="message" name="message" value="{{message}}" maxlength="2000" autocomplete="off">
  <p class="buttons"><button type="submit">Rename</button> <a href="{{wiki.page_url(page.path)}}">Cancel</a></p>
</form>
