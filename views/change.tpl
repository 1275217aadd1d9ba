<span class="kind kind-{{change.kind}}">{{change.kind}}</span>
<span class="message">{{change.message}}</span>
<span class="muted">by {{change.author_handle or change.author_did}} via {{change.via}} ·
<span title="{{utc(change.created_at)}}">{{ago(change.created_at)}}</span></span>
