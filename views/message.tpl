% if error:
<p class="error" role="alert">\\
% for text, url in (error.parts if hasattr(error, 'parts') else ((str(error), None),)):
% if url:
<a href="{{url}}">{{text}}</a>\\
% else:
{{text}}\\
% end
% end
</p>
% end
