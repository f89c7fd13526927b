from django import forms

from shop.models import Customer, Product


class SignUpForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Customer
        fields = ["email", "phone"]


class AddToCartForm(forms.Form):
    product = forms.ModelChoiceField(queryset=Product.objects.all(), widget=forms.HiddenInput)
    quantity = forms.IntegerField(min_value=1, max_value=10, initial=1)
