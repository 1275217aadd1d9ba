<section class="panel" id="git">
<h2>Git access</h2>
% if git_enabled:
<p>Git access is <strong>on</strong>. Clone the wiki with a personal access token as the password
(any user name):</p>
<p><code class="secret">git clone {{git_url}}</code></p>
<p class="hint">Each page is <code>Page.md</code>, its attachments sit in the folder <code>Page/</code>, and every
revision is a commit. A push adds its commits to the wiki as revisions; force pushes, other branches and tags
are refused. Make a token on your <a href="/account/apps">apps page</a>.</p>
% else:
<p>Git access is off. Turn it on to clone, pull and push this wiki with git, using a personal access token.</p>
% end
<form method="post" action="{{wiki.url('settings/git')}}" class="inline-form">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
  <input type="hidden" name="git" value="{{'off' if git_enabled else 'on'}}">
  <button type="submit"{{!' class="secondary"' if git_enabled else ''}}>Turn git access {{'off' if git_enabled else 'on'}}</button>
</form>
</section>
