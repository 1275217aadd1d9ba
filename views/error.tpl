% rebase('layout', title=f'Error {status}')
<h1>Error {{status}}</h1>
<p class="error">{{message}}</p>
<p><a href="/">Back to the start</a></p>
