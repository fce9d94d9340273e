"""The portal's shared page pieces: generic views, tables with chosen columns, downloads,
pagination, filters, search, tabs and dialogs. It knows no app of the portal: permissions and
the objects' scoping come in through hooks that the apps above bind."""
