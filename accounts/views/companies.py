from django.views.generic import TemplateView


class CompanyListView(TemplateView):
    template_name = "placeholder.html"


class CompanyAddView(TemplateView):
    pass


class CompanyDetailView(TemplateView):
    pass


class CompanyDeleteView(TemplateView):
    pass
