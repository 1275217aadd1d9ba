% rebase('layout', title='Import')
<h1>Import finished</h1>
<p>{{len(report.created)}} page{{'' if len(report.created) == 1 else 's'}} created, {{len(report.skipped)}} file{{'' if len(report.skipped) == 1 else 's'}} skipped.</p>
% if report.created:
<h2>Created</h2>
<ul class="index">
% for path in report.created:
  <li><a href="{{wiki.page_url(path)}}">{{path}}</a></li>
% end
</ul>
% end
% if report.skipped:
<h2>Skipped</h2>
<table>
  <thead><tr><th>File</th><th>Why</th></tr></thead>
  <tbody>
  % for name, reason in report.skipped:
    <tr><td><code>{{name}}</code></td><td>{{reason}}</td></tr>
  % end
  </tbody>
</table>
% end
<p><a href="{{wiki.url('settings')}}">Back to the settings</a></p>
