<div class="diff" role="figure" aria-label="Differences">
% for line in lines:
<div class="line {{line.kind}}">{{!line.html}}</div>
% end
</div>
