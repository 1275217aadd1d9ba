% rebase('layout', title='Import')
<h1>Import finished</h1>
<p>{{counted(len(report.created), 'page')}} created, {{counted(len(report.skipped), 'file')}} skipped.</p>
% if report.revisions:
<p>With their history: {{counted(report.revisions, 'revision')}}, each with its
author and time as recorded in the export and marked “imported”{{', and %s you can restore from its history' % counted(len(report.deleted), 'deleted page') if report.deleted else ''}}.</p>
% end
% if report.attachments:
<p>{{counted(report.attachments, 'attachment')}} came with the pages.</p>
% end
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
