<div class="diff" role="figure" aria-label="Differences">
% for kind, line in lines:
<div class="line {{kind}}">{{line}}</div>
% end
</div>
