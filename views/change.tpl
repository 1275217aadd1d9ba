<span class="kind kind-{{change.kind}}">{{change.kind}}</span>
<span class="message">{{change.message}}</span>
<span class="muted">by
% include('person', username=change.author_username, handle=change.author_handle, fallback=change.imported_author)
{{via(change.via)}} · <span title="{{utc(change.created_at)}}">{{ago(change.created_at)}}</span>{{' · imported' if change.imported_from else ''}}</span>
