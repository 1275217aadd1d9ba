% rebase('layout', title='Connect an app')
<h1>Connect an app to your wiki?</h1>
<dl class="facts">
  <dt>App</dt><dd><strong>{{client_name}}</strong> <span class="muted">(the name the app gives itself)</span></dd>
  % if client_host:
  <dt>Published at</dt><dd><code>{{client_host}}</code></dd>
  % end
  <dt>Sends you back to</dt>
  <dd><code>{{redirect_host}}</code>
  % if loopback:
    <span class="muted">(a program on your own computer)</span>
  % end
  </dd>
  <dt>Signed in as</dt><dd>
% include('person', username=user['username'], handle=user['handle'])
  </dd>
</dl>
<p class="muted">Only continue if you started connecting this app yourself and you recognise the address it
sends you back to.</p>
% if problem:
<p class="error">{{problem}}</p>
% end
<form id="consent" method="post" action="{{action}}" class="stack">
  <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
% can_approve = bool(wikis) or bool(target and set(requested) & role_scopes(target['role']))
% if target:
  <p>Wiki: <strong>{{target['title']}}</strong> <span class="muted">/w/{{target['slug']}}, where you are {{target['role']}}</span></p>
% elif resource_slug:
  <p class="error">You are not a member of a wiki at /w/{{resource_slug}}, so you cannot connect the app to it.</p>
% elif wikis:
  <fieldset>
    <legend>Which wiki may it use?</legend>
    % for index, choice in enumerate(wikis):
    <label class="choice"><input type="radio" name="wiki" value="{{choice['slug']}}" {{'checked' if index == 0 else ''}}>
      <span>{{choice['title']}}</span>
      <span class="explain">/w/{{choice['slug']}} · you are {{choice['role']}}</span></label>
    % end
  </fieldset>
% else:
  <p class="error">You are not a member of any wiki yet, so there is nothing to connect the app to.</p>
% end
% scope_names = {'wiki:read': 'Read', 'wiki:write': 'Write'}
% if can_approve:
  <fieldset>
    <legend>Allow it to</legend>
    % for scope in requested:
    %   allowed = scope in role_scopes(target['role']) if target else True
    <label class="choice"><input type="checkbox" name="grant_scope" value="{{scope}}" {{'checked' if allowed else 'disabled'}}>
      <span><strong>{{scope_names[scope]}}</strong> <code>{{scope}}</code></span>
      <span class="explain">{{labels[scope][:1].upper() + labels[scope][1:]}}.
      % if not allowed:
      (your role cannot grant this)
      % end
      </span>
    </label>
    % end
    % if not target:
    <p class="muted">For a wiki where you are a viewer, only reading can be allowed.</p>
    % end
  </fieldset>
% end
  <p>
% if can_approve:
    <button type="submit" name="decision" value="approve">Allow</button>
% end
    <button type="submit" name="decision" value="deny" class="secondary">Deny</button>
  </p>
</form>
