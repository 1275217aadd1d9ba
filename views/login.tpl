% rebase('layout', title='Sign in')
<h1>Sign in</h1>
<p>Sign-in with your ATProto (Bluesky) identity is not available on this instance yet.
Ask the operator for a one-time login link: <code>robotwtf login-link USERNAME</code>.</p>
