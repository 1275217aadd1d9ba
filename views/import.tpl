% rebase('layout', title='Import')
<h1>Import finished</h1>
<p>{{len(report.created)}} page{{'' if len(report.created) == 1 else 's'}} created, {{len(report.skipped)}} file{{'' if len(report.skipped) == 1 else 's'}} skipped.</p>
% if report.revisions:
<p>With their history: {{report.revisions}} revision{{'' if report.revisions == 1 else 's'}}, each with its
author and time as recorded in the export and marked “imported”{{', and %d deleted page%s you can restore from its history' % (len(report.deleted), '' if len(report.deleted) == 1 else 's') if report.deleted else ''}}.</p>
% end
% if report.attachments:
<p>{{report.attachments}} attachment{{'' if report.attachments == 1 else 's'}} came with the pages.</p>
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
