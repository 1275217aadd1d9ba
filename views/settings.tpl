% rebase('layout', title='Settings')
<h1>Settings</h1>
% include('message', error=error)

<section class="panel">
<h2>About this wiki</h2>
<form method="post" action="{{wiki.url('settings')}}" class="stack">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <label for="title">Title</label>
  <input id="title" name="title" value="{{wiki.title}}" maxlength="200" required>
  <label for="description">Description</label>
  <textarea id="description" name="description" rows="3" maxlength="2000">
{{wiki.row['description']}}</textarea>
  <fieldset>
    <legend>Who can read it</legend>
    <label class="choice"><input type="radio" name="visibility" value="private"{{!' checked' if wiki.row['visibility'] == 'private' else ''}}>
      Private: only its members</label>
    <label class="choice"><input type="radio" name="visibility" value="public"{{!' checked' if wiki.row['visibility'] == 'public' else ''}}>
      Public: anyone with the link can read it; only members can change it</label>
  </fieldset>
  <p class="buttons"><button type="submit">Save</button></p>
</form>
</section>

% include('connect_panel')

% include('settings_git')

<section class="panel">
<h2>Members</h2>
<table class="members">
  <thead><tr><th>Person</th><th>Role</th><th></th></tr></thead>
  <tbody>
  % for person in members:
    <tr>
      <td>
        % include('person', username=person['username'], handle=person['handle'], nobody='has not signed in yet')
        <br><code class="did">{{person['did']}}</code>
      </td>
      <td>
        <form method="post" action="{{wiki.url('settings/members/role')}}" class="inline-form">
          <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
          <input type="hidden" name="did" value="{{person['did']}}">
          <select name="role" aria-label="Role of {{person['username'] or person['did']}}">
          % for role in ('owner', 'editor', 'viewer'):
            <option value="{{role}}"{{!' selected' if role == person['role'] else ''}}>{{role}}</option>
          % end
          </select>
          <button type="submit" class="secondary">Change</button>
        </form>
      </td>
      <td>
        <form method="post" action="{{wiki.url('settings/members/remove')}}" class="inline"
              data-confirm="Remove {{person['username'] or person['did']}} from this wiki?">
          <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
          <input type="hidden" name="did" value="{{person['did']}}">
          <button type="submit" class="link">remove</button>
        </form>
      </td>
    </tr>
  % end
  </tbody>
</table>
<h3>Add someone</h3>
<form method="post" action="{{wiki.url('settings/members')}}" class="inline-form">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <label for="member" class="visually-hidden">Handle or DID</label>
  <input id="member" name="member" value="{{member}}" placeholder="alice.bsky.social or did:plc:…" required
         autocapitalize="none" spellcheck="false">
  <label for="role" class="visually-hidden">Role</label>
  <select id="role" name="role">
    <option value="editor">editor</option>
    <option value="viewer">viewer</option>
    <option value="owner">owner</option>
  </select>
  <button type="submit">Add</button>
</form>
<p class="hint">Editors read and change pages; viewers only read; owners also manage these settings.
People you add need not have signed in here yet.</p>
</section>

<section class="panel">
<h2>Export and import</h2>
<p>{{usage.pages}} of {{quotas.pages_per_wiki}} pages, {{size(usage.bytes)}} of {{size(quotas.bytes_per_wiki)}} used.</p>
<p><a class="button secondary" href="{{wiki.url('settings/export')}}">Download a zip of the wiki</a></p>
<p class="hint">Every page with its whole history and attachments: import it into another wiki to bring it all back.</p>
<form method="post" action="{{wiki.url('settings/import')}}" enctype="multipart/form-data" class="stack">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <label for="archive">Import a wiki export, or a zip of Markdown files <span class="muted">(existing pages are left alone)</span></label>
  <input id="archive" name="archive" type="file" accept=".zip,application/zip" required>
  <p class="buttons"><button type="submit">Import</button></p>
</form>
</section>

<section class="panel">
<h2>Delete this wiki</h2>
<details class="danger">
  <summary>Delete the wiki with all its pages, history and attachments</summary>
  <form method="post" action="{{wiki.url('settings/delete')}}" class="stack">
    <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
    <label for="confirm">Type <strong>{{wiki.slug}}</strong> to confirm. There is no undo.</label>
    <input id="confirm" name="confirm" autocomplete="off" required>
    <button type="submit" class="danger">Delete the wiki for good</button>
  </form>
</details>
</section>
