from django.shortcuts import render

from .jobs import HelloJob


def home(request):
    job = None
    if request.method == "POST":
        job = HelloJob.perform_later(request.POST.get("name") or "world")
    return render(request, "store/home.html", {"job": job})
