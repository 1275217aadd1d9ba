<div class="page-body{{' with-toc' if rendered.toc else ''}}">
% if rendered.toc:
<nav class="toc" aria-label="Contents">
  <details data-open-wide>
    <summary>Contents</summary>
    <ol>
    % for entry in rendered.toc:
      <li class="toc-{{entry.level}}"><a href="#{{entry.anchor}}">{{entry.text}}</a></li>
    % end
    </ol>
  </details>
</nav>
% end
<article class="content">
% if not rendered.has_title:
<h1>{{title}}</h1>
% end
{{!rendered.html}}
</article>
</div>
