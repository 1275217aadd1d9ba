<p class="crumbs">
% parts = path.split('/')
% for i, part in enumerate(parts[:-1]):
<a href="{{wiki.page_url('/'.join(parts[:i + 1]))}}">{{part}}</a> <span aria-hidden="true">/</span>
% end
<span>{{parts[-1]}}</span>
</p>
